"""Reading the prediction table: the lookup client, the HTTP API, API keys and limits, metering."""
