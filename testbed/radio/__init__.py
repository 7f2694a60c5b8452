"""Radios: typed configs, front-ends (Pluto, USRP, SigMF files, loopback), pyadi-iio helpers."""
