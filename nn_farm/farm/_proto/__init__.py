"""Generated from protos/farm.proto by scripts/gen_protos.py. Do not edit."""
