"""The journeys, channel-agnostic."""
