"""What the daemon keeps on disk: per-domain health records (dogpile
region, sqlite backend), recovery history, evidence files, the state
directory and its lock."""
