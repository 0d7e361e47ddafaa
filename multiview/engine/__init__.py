"""The training engine shared by IBRNet and JDACS: options, devices, checkpoints, logging, DDP, loop."""
