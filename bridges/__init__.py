"""The BioX-Bridge method: foundation-model adapters, the bridge, position selection, training, export."""
