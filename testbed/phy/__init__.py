"""The OFDM PHY for analog JSCC symbols, as plain numpy (no GNU Radio import here).

``config`` carrier layout and parameters · ``fec`` CRC, convolutional code, interleaver ·
``header`` the frame header · ``framing`` image stream <-> frames, reassembly ·
``equalizer`` channel estimation, pilot tracking, SNR estimation · ``txscale`` back-off and
clipping · ``impairments`` CFO, SCO, TDL multipath profiles, noise level.
The GNU Radio blocks in :mod:`testbed.gr` are thin adapters around these modules.
"""
