"""Who a call is about: the web request's context, its fields, the client IP, the cookies."""
