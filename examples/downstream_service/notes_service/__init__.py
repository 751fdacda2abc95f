"""A downstream service whose users sign in with identity."""
