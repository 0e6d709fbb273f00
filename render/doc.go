// Package render is the Distrirender job: a deterministic path tracer, and a
// coordinator and workers that render a frame tile by tile across the mesh.
//
// # The renderer
//
// Render draws a Scene (spheres and planes; diffuse, checkered, metal with
// fuzz, glass with refraction and Schlick reflectance; spherical lights
// sampled directly for soft shadows; a sky gradient; a thin-lens camera) with
// Job.Samples paths per pixel on a jittered stratified grid, tile by tile on
// GOMAXPROCS goroutines. RenderTile draws one tile.
//
// Rendering is deterministic: every pixel seeds its own random number
// generator (PCG) from the job's seed and the pixel's position, sums its
// samples in a fixed order, and shares no state with other pixels. A pixel's
// colour therefore depends only on the scene, the seed, its position and the
// job's size, samples and depth: a tile rendered on any node is bit-identical
// to the same tile rendered anywhere else by the same binary, or one built by
// the same Go version for the same GOARCH (and GOAMD64, GOARM64... level: the
// compiler may fuse multiplications and additions where the architecture
// allows, and some math functions have per-architecture code), and a frame
// assembled from tiles of many nodes is byte-identical to Render on one. To keep nodes with different arithmetic
// from mixing their tiles, a job carries a fingerprint of the scene and of a
// tiny probe render; a worker whose own fingerprint differs declines the job.
//
// Caustics (light focused by glass or metal onto a diffuse surface) are left
// out: at the sample counts a frame can afford they appear only as speckle.
//
// # Rendering over the mesh
//
// A Coordinator runs on one node, Workers on others (a node runs one of the
// two at a time: each consumes its node's Receive and Events). The
// coordinator announces the job to every node it can reach. Workers pull
// tiles: each of a worker's slots asks for a tile, the coordinator assigns
// one, the worker renders it and sends the pixels back, which asks for the
// next. So faster nodes take more tiles, and a worker asks for a few more
// tiles than it renders at once (WorkerConfig.Ahead) so that the network's
// round trip costs no rendering time.
//
// The coordinator hands a tile out again when its worker becomes unreachable
// (node events, then the node's topology), when a message to the worker
// cannot be delivered (DeliveryFailed), or when the tile misses its deadline;
// near the end of a job it also gives idle workers a second copy of tiles that
// are taking long elsewhere. The first result for a tile wins; later ones are
// identical anyway and are ignored. Messages carry the job's ID, so jobs run
// one after another never mix.
//
// The job protocol's messages are small binary records (versioned, decoded
// strictly, checked against the job's tile grid) carried as node message
// bodies; docs/RENDER.md describes them byte by byte. A tile's result is its
// RGBA pixels: at most 256 KiB (a 256×256 tile), well under the node's 1 MiB
// default body limit.
//
// # Security
//
// Nothing is authenticated. Any node of the mesh can announce jobs to a
// worker (it renders them, up to WorkerConfig.MaxJobs at once) and can send a
// coordinator results for its job: a node that knows the job ID can put wrong
// pixels in the frame. Run render jobs on a mesh you trust.
package render
