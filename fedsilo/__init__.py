"""fedsilo: privacy-preserving cross-silo analytics (PSI, SecureBoost, federated LR) over gRPC."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
