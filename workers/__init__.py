"""GPU-side ML code: fine-tuning, quantization, pruning, distillation.

Free of Django by design: it reports through a small reporter interface that the
platform implements with the ORM (see docs/architecture.md). Nothing here may
import django, config or any platform app.
"""
