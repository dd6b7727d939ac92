"""What each command is: the routing table (static overrides) and what the server says about its commands."""
