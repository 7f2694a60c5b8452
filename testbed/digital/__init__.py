"""Conventional (separation-based) coding for the digital baselines, as plain numpy: a codec
kind of its own beside the learned ones, mapping an image to channel symbols that the same PHY
carries.

``qam`` Gray QPSK/16-QAM/64-QAM and max-log LLRs · ``ldpc_codes`` the 802.11n N=1944 LDPC
codes and their encoder · ``codeblocks`` a bit stream in CRC-protected LDPC code blocks,
decoded by belief propagation (the ``ldpc`` package).
"""
