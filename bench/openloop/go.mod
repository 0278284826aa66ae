module riskstream/bench/openloop

// Standard library only: building it downloads nothing. 1.18 is the oldest Go a supported distro ships.
go 1.18
