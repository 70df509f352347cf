"""YAML recipes shipped with bas-wsol (data, not code)."""
