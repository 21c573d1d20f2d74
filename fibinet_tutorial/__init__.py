"""FiBiNET tutorial helper package."""
