"""Model zoo: SlowFast family and the R(2+1)D paper family, written with keras / keras.ops only."""
