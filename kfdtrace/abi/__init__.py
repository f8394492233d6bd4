"""The KFD ABI, sysfs topology and GPU family registry: pure data and parsing."""
