"""The server side: upstream connections, their explicit states, and the pools that lend them to clients."""
