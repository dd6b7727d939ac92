"""Who a client is (authentication) and what the upstream would let it do (permissions)."""
