"""Scripts that print Rallypoint's performance figures."""
