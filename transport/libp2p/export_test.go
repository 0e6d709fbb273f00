package libp2p

// BestAddr exposes bestAddr to the tests.
var BestAddr = bestAddr
