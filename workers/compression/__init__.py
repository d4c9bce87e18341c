"""Compression building blocks (issue 6), free of Django: one measurement
harness for before/after reports, int8 dynamic quantization with a safetensors
export, and magnitude pruning. Jobs wiring (kinds, guard, reports on the
dashboard) builds on these."""
