"""Errors handed to ``on_error``; none of them is ever raised at the caller."""


class DeliveryError(Exception):
    """A leg did not deliver a message."""


class QueueFull(DeliveryError):
    """A queue was full, so the message was dropped rather than block the caller."""


class ExitTimeout(DeliveryError):
    """The interpreter exited before the message could be delivered."""


class ClientClosed(DeliveryError):
    """The call came after ``join()`` or ``shutdown()``: the client delivers no more."""


class Unsendable(DeliveryError):
    """A leg's library cannot send the message: Segment's consumer would drop it
    (over its size limit once the leg's own fields are in, or not writable as JSON)."""
