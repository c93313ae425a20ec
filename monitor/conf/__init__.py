"""Configuration: every option collected for oslo-config-generator,
loading and validating the config files, logging set-up."""
