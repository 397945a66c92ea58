"""What both HTTP apps (the management API and the gateway's REST endpoints) share: the token
check, JSON answers and body limits, and the one map from errors to status codes."""
