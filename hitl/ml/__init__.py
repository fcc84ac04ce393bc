"""Pure ML: numpy/torch in, numpy/torch out; nothing here knows the store or the trainer."""
