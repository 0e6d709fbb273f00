package render

import "time"

// SetTileDelay makes every tile w renders take at least d longer: a slow
// node, for tests. Call it before Run.
func SetTileDelay(w *Worker, d time.Duration) { w.tileDelay = d }
