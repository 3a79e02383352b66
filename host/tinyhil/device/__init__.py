"""The device stage: the serial protocol, boards (emulated and physical) and
how to bring them up, in labgrid's layering:

  resources  where a board is: a QEMU machine, a serial port (qemu.py, serial_board.py)
  driver     what we say to it: the framed protocol (protocol.py, driver.py)
  strategy   how it gets to a state where it answers: boot, reset, power-cycle
"""
