package render

import (
	"errors"
	"fmt"
	"image"
)

// Limits on a Job. They keep every tile result under 256 KiB (a quarter of
// the mesh's default 1 MiB message body) and every count inside its field of
// the wire format (docs/RENDER.md).
const (
	MaxSize     = 16384 // largest Width or Height
	MaxSamples  = 65536 // most samples per pixel
	MaxDepth    = 64    // most bounces per path
	MinTileSize = 4     // smallest tile side
	MaxTileSize = 256   // largest tile side: a 256×256 RGBA tile is 256 KiB
	MaxTiles    = 65536 // most tiles in a frame
)

// Defaults for the zero fields of a Job (see Job.WithDefaults).
const (
	DefaultSamples  = 64
	DefaultDepth    = 8
	DefaultTileSize = 32
)

// ErrInvalidJob is returned for a Job whose settings are out of range, or for
// a tile that is not part of it.
var ErrInvalidJob = errors.New("render: invalid job")

// Job says what to render: which scene, how large, how well. The colour of a
// pixel depends only on the scene, Seed, the pixel's position, Width, Height,
// Samples and Depth; TileSize only decides how the frame is cut up, and ID only
// tells jobs apart on the mesh.
type Job struct {
	// ID tells this job's messages apart from other jobs'. Coordinator.Run
	// picks a random one if it is zero.
	ID uint64
	// Scene is the name of the scene (see Lookup).
	Scene string
	// Width and Height are the frame's size in pixels, 1 to MaxSize.
	Width, Height int
	// Samples is the number of paths traced per pixel, on a jittered
	// stratified grid (1 to MaxSamples; zero means DefaultSamples).
	Samples int
	// Depth is the most surfaces a path bounces off (1 to MaxDepth; zero
	// means DefaultDepth).
	Depth int
	// Seed seeds every pixel's random number generator.
	Seed uint64
	// TileSize is the side of the square tiles the frame is cut into (the
	// last row and column may be smaller), MinTileSize to MaxTileSize; zero
	// means DefaultTileSize.
	TileSize int
}

// WithDefaults returns j with its zero Samples, Depth and TileSize replaced
// by the defaults.
func (j Job) WithDefaults() Job {
	if j.Samples == 0 {
		j.Samples = DefaultSamples
	}
	if j.Depth == 0 {
		j.Depth = DefaultDepth
	}
	if j.TileSize == 0 {
		j.TileSize = DefaultTileSize
	}
	return j
}

// Validate reports whether every field of j is in range. It does not apply
// defaults: call it on j.WithDefaults() to accept zero fields.
func (j Job) Validate() error {
	switch {
	case !validSceneName(j.Scene):
		return fmt.Errorf("%w: scene name %q is not 1-64 bytes of [a-z0-9._-]", ErrInvalidJob, j.Scene)
	case j.Width < 1 || j.Width > MaxSize || j.Height < 1 || j.Height > MaxSize:
		return fmt.Errorf("%w: size %dx%d not within 1..%d", ErrInvalidJob, j.Width, j.Height, MaxSize)
	case j.Samples < 1 || j.Samples > MaxSamples:
		return fmt.Errorf("%w: %d samples not within 1..%d", ErrInvalidJob, j.Samples, MaxSamples)
	case j.Depth < 1 || j.Depth > MaxDepth:
		return fmt.Errorf("%w: depth %d not within 1..%d", ErrInvalidJob, j.Depth, MaxDepth)
	case j.TileSize < MinTileSize || j.TileSize > MaxTileSize:
		return fmt.Errorf("%w: tile size %d not within %d..%d", ErrInvalidJob, j.TileSize, MinTileSize, MaxTileSize)
	case j.Tiles() > MaxTiles:
		return fmt.Errorf("%w: %d tiles, more than %d: use larger tiles", ErrInvalidJob, j.Tiles(), MaxTiles)
	}
	return nil
}

// TilesX returns the number of tile columns.
func (j Job) TilesX() int { return (j.Width + j.TileSize - 1) / j.TileSize }

// TilesY returns the number of tile rows.
func (j Job) TilesY() int { return (j.Height + j.TileSize - 1) / j.TileSize }

// Tiles returns the number of tiles, numbered row by row from the top left.
func (j Job) Tiles() int { return j.TilesX() * j.TilesY() }

// TileRect returns the pixels of tile i, clipped to the frame. It returns an
// error wrapping ErrInvalidJob if j is invalid or i is not one of its tiles.
func (j Job) TileRect(i int) (image.Rectangle, error) {
	if err := j.Validate(); err != nil {
		return image.Rectangle{}, err
	}
	if i < 0 || i >= j.Tiles() {
		return image.Rectangle{}, fmt.Errorf("%w: tile %d not within 0..%d", ErrInvalidJob, i, j.Tiles()-1)
	}
	x0, y0 := (i%j.TilesX())*j.TileSize, (i/j.TilesX())*j.TileSize
	return image.Rect(x0, y0, min(x0+j.TileSize, j.Width), min(y0+j.TileSize, j.Height)), nil
}

// tileBytes returns the length of tile i's RGBA pixels; j and i must be valid.
func (j Job) tileBytes(i int) int {
	r, _ := j.TileRect(i)
	return r.Dx() * r.Dy() * 4
}
