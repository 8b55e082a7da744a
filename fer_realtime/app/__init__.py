"""What the page needs that is not UI: the live stream's shared state, the model catalogue, uploaded videos."""
