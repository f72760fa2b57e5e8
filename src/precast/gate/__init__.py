"""The champion gate: the evidence it decides on, its report, the model card, and the
champion history."""
