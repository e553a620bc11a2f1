"""On the caller's thread: a Segment-spec message built, sized, cleaned and given its id."""
