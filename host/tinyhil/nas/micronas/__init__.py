"""MicroNAS: hardware-aware differentiable search over Time-Reduce and
Sensor-Fusion cells, with the device's LUT through Eq. 2 (King et al.)."""
