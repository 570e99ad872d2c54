"""Product details: embedded catalog file or the Banking Service."""
