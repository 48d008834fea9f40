"""Model prices: versions, the in-memory catalog, and upstream price sources."""
