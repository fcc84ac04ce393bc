"""Store-aware learners, one per training mode; the trainer thread drives them."""
