package node

// DebugString exposes the loop's state to the external tests.
var DebugString = (*Node).debugString
