"""After the call returns: the dispatcher, the legs, and the account of every message."""
