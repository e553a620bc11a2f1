"""The register and every reach into posthog and Segment; nothing else imports their insides."""
