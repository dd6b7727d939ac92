"""The client side: one ``Session`` per client connection, and the handlers for the commands it answers itself."""
