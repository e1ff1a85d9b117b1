"""Staff members and the visits they make to customers' homes."""
