package render

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"image"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
)

// rendererVersion changes whenever the renderer's output changes for the same
// inputs; it is part of every fingerprint, so that nodes running different
// renderers do not mix their tiles.
const rendererVersion = 1

// Numerical constants of the tracer.
const (
	// rayEpsilon is the distance a new ray starts from the surface it leaves,
	// so that it does not hit that surface again.
	rayEpsilon = 1e-4
	// sampleClamp caps each component of one sample's radiance: it removes
	// rare very bright samples ("fireflies") from caustics at low sample
	// counts, at the cost of a little energy.
	sampleClamp = 6.0
	// rouletteDepth is the bounce after which Russian roulette may end a path.
	rouletteDepth = 3
)

// rng is a pixel's random number generator. Each pixel seeds its own from
// (job seed, x, y), so its colour does not depend on which goroutine or node
// renders it, or in which order.
type rng struct{ p rand.PCG }

func (r *rng) float() float64 { return float64(r.p.Uint64()>>11) * 0x1p-53 }

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func pixelRNG(seed uint64, x, y int) rng {
	a := splitmix64(seed ^ splitmix64(uint64(uint32(y))<<32|uint64(uint32(x))))
	var r rng
	r.p.Seed(a, splitmix64(a^0x2545f4914f6cdd1d))
	return r
}

// randomUnit returns a uniformly distributed unit vector.
func (r *rng) randomUnit() Vec3 {
	z := 1 - 2*r.float()
	phi := 2 * math.Pi * r.float()
	s := math.Sqrt(max(0, 1-z*z))
	return Vec3{s * math.Cos(phi), s * math.Sin(phi), z}
}

// randomInBall returns a uniformly distributed point in the unit ball.
func (r *rng) randomInBall() Vec3 {
	return r.randomUnit().scale(math.Cbrt(r.float()))
}

// view is a camera set up for one frame size.
type view struct {
	origin, lowerLeft, horiz, vert, u, v Vec3
	lensRadius                           float64
	width, height                        float64
}

func newView(c Camera, width, height int) view {
	h := math.Tan(c.FOV * math.Pi / 360)
	vh := 2 * h
	vw := vh * float64(width) / float64(height)
	w := c.From.sub(c.At).unit()
	u := c.Up.cross(w).unit()
	v := w.cross(u)
	focus := c.Focus
	if focus == 0 {
		focus = c.At.sub(c.From).length()
	}
	hz, vt := u.scale(vw*focus), v.scale(vh*focus)
	return view{
		origin:     c.From,
		lowerLeft:  c.From.sub(hz.scale(0.5)).sub(vt.scale(0.5)).sub(w.scale(focus)),
		horiz:      hz,
		vert:       vt,
		u:          u,
		v:          v,
		lensRadius: c.Aperture / 2,
		width:      float64(width),
		height:     float64(height),
	}
}

// ray returns the primary ray through frame coordinates (fx, fy), in pixels
// from the top left.
func (vw *view) ray(fx, fy float64, r *rng) (o, d Vec3) {
	s, t := fx/vw.width, 1-fy/vw.height
	o = vw.origin
	if vw.lensRadius > 0 {
		rad := vw.lensRadius * math.Sqrt(r.float())
		phi := 2 * math.Pi * r.float()
		o = o.add(vw.u.scale(rad * math.Cos(phi))).add(vw.v.scale(rad * math.Sin(phi)))
	}
	d = vw.lowerLeft.add(vw.horiz.scale(s)).add(vw.vert.scale(t)).sub(o).unit()
	return o, d
}

// hit is a ray's closest intersection.
type hit struct {
	t     float64
	p, n  Vec3 // point, and unit normal facing the ray
	front bool // the ray came from outside
	mat   *Material
	obj   int // sphere index, or -1 for a plane
}

// intersect finds the closest surface along the unit direction d from o
// within (rayEpsilon, tmax).
func (c *compiled) intersect(o, d Vec3, tmax float64) (hit, bool) {
	best := hit{t: tmax, obj: -2}
	for i := range c.planes {
		p := &c.planes[i]
		den := p.normal.dot(d)
		if math.Abs(den) < 1e-12 {
			continue
		}
		t := p.point.sub(o).dot(p.normal) / den
		if t > rayEpsilon && t < best.t {
			best.t, best.obj, best.mat = t, -1, &p.mat
			best.n = p.normal
		}
	}
	if len(c.bvh) > 0 {
		c.traverse(o, d, &best, false)
	}
	if best.obj == -2 {
		return best, false
	}
	best.p = o.add(d.scale(best.t))
	if best.obj >= 0 {
		s := &c.spheres[best.obj]
		best.n = best.p.sub(s.center).scale(1 / s.r)
	}
	best.front = d.dot(best.n) < 0
	if !best.front {
		best.n = best.n.neg()
	}
	return best, true
}

// occluded reports whether any surface lies along d from o within
// (rayEpsilon, tmax).
func (c *compiled) occluded(o, d Vec3, tmax float64) bool {
	for i := range c.planes {
		p := &c.planes[i]
		den := p.normal.dot(d)
		if math.Abs(den) < 1e-12 {
			continue
		}
		if t := p.point.sub(o).dot(p.normal) / den; t > rayEpsilon && t < tmax {
			return true
		}
	}
	if len(c.bvh) == 0 {
		return false
	}
	h := hit{t: tmax, obj: -2}
	return c.traverse(o, d, &h, true)
}

// traverse walks the BVH, updating best with closer sphere hits. With any
// set it returns true at the first hit.
func (c *compiled) traverse(o, d Vec3, best *hit, any bool) bool {
	inv := Vec3{1 / d.X, 1 / d.Y, 1 / d.Z}
	var stack [64]int32
	sp := 0
	n := int32(0)
	found := false
	for {
		nd := &c.bvh[n]
		if slab(nd, o, inv, best.t) {
			if nd.count == 0 {
				stack[sp] = nd.first
				sp++
				n++
				continue
			}
			for i := nd.first; i < nd.first+nd.count; i++ {
				s := &c.spheres[i]
				oc := o.sub(s.center)
				hb := oc.dot(d)
				cc := oc.dot(oc) - s.r2
				disc := hb*hb - cc
				if disc < 0 {
					continue
				}
				sq := math.Sqrt(disc)
				t := -hb - sq
				if t <= rayEpsilon {
					t = -hb + sq
				}
				if t > rayEpsilon && t < best.t {
					if any {
						return true
					}
					best.t, best.obj, best.mat = t, int(i), &s.mat
					found = true
				}
			}
		}
		if sp == 0 {
			return found
		}
		sp--
		n = stack[sp]
	}
}

// slab reports whether the ray enters the node's box before tmax.
func slab(nd *bvhNode, o, inv Vec3, tmax float64) bool {
	tmin := rayEpsilon
	t0, t1 := (nd.lo.X-o.X)*inv.X, (nd.hi.X-o.X)*inv.X
	tmin, tmax = max(tmin, min(t0, t1)), min(tmax, max(t0, t1))
	t0, t1 = (nd.lo.Y-o.Y)*inv.Y, (nd.hi.Y-o.Y)*inv.Y
	tmin, tmax = max(tmin, min(t0, t1)), min(tmax, max(t0, t1))
	t0, t1 = (nd.lo.Z-o.Z)*inv.Z, (nd.hi.Z-o.Z)*inv.Z
	tmin, tmax = max(tmin, min(t0, t1)), min(tmax, max(t0, t1))
	return tmin <= tmax
}

func (c *compiled) skyColor(d Vec3) Vec3 {
	k := max(d.Y, 0)
	return c.sky.Horizon.scale(1 - k).add(c.sky.Zenith.scale(k))
}

func (m *Material) albedo(p Vec3) Vec3 {
	if m.CheckerSize > 0 {
		ix := int64(math.Floor(p.X / m.CheckerSize))
		iz := int64(math.Floor(p.Z / m.CheckerSize))
		if (ix+iz)&1 != 0 {
			return m.Checker
		}
	}
	return m.Color
}

// direct estimates the light arriving at a diffuse point straight from the
// spherical lights, by sampling one direction in the cone each light
// subtends. The result is to be multiplied by the albedo.
func (c *compiled) direct(h *hit, r *rng) Vec3 {
	var sum Vec3
	for _, li := range c.lights {
		s := &c.spheres[li]
		toC := s.center.sub(h.p)
		d2 := toC.dot(toC)
		// Two draws per light whatever happens, to keep the sequence regular.
		u1, u2 := r.float(), r.float()
		if d2 <= s.r2 {
			continue
		}
		cosMax := math.Sqrt(1 - s.r2/d2)
		w := toC.scale(1 / math.Sqrt(d2))
		cosT := 1 - u1*(1-cosMax)
		sinT := math.Sqrt(max(0, 1-cosT*cosT))
		phi := 2 * math.Pi * u2
		a, b := onb(w)
		dir := a.scale(math.Cos(phi) * sinT).add(b.scale(math.Sin(phi) * sinT)).add(w.scale(cosT))
		cosN := dir.dot(h.n)
		if cosN <= 0 {
			continue
		}
		// Distance to the light along dir.
		oc := h.p.sub(s.center)
		hb := oc.dot(dir)
		disc := hb*hb - (oc.dot(oc) - s.r2)
		if disc < 0 {
			continue
		}
		tl := -hb - math.Sqrt(disc)
		if tl <= rayEpsilon || c.occluded(h.p, dir, tl*(1-1e-9)) {
			continue
		}
		// (albedo/pi) * Le * cos / pdf, with pdf = 1 / (2 pi (1 - cosMax)).
		sum = sum.add(s.mat.Color.scale(2 * (1 - cosMax) * cosN))
	}
	return sum
}

// trace follows one path from o along d and returns the radiance it carries.
//
// Light reaches a diffuse surface only through next-event estimation
// (direct): once a path has bounced off a diffuse surface, lights it hits are
// not counted, not even through mirrors or glass. That leaves out caustics
// (light focused by glass or metal onto a diffuse surface), which would
// otherwise appear as speckle at the sample counts a frame can afford.
func (c *compiled) trace(o, d Vec3, depth int, r *rng) Vec3 {
	var sum Vec3
	thr := Vec3{1, 1, 1}
	countEmission := true // until the first diffuse bounce
	for bounce := 0; bounce < depth; bounce++ {
		h, ok := c.intersect(o, d, math.Inf(1))
		if !ok {
			sum = sum.add(thr.mul(c.skyColor(d)))
			break
		}
		m := h.mat
		switch m.Kind {
		case Light:
			if countEmission {
				sum = sum.add(thr.mul(m.Color))
			}
			return sum
		case Diffuse:
			alb := m.albedo(h.p)
			sum = sum.add(thr.mul(alb).mul(c.direct(&h, r)))
			nd := h.n.add(r.randomUnit())
			if nd.dot(nd) < 1e-12 {
				nd = h.n
			}
			o, d = h.p, nd.unit()
			thr = thr.mul(alb)
			countEmission = false
		case Metal:
			rd := reflect(d, h.n)
			if m.Fuzz > 0 {
				rd = rd.add(r.randomInBall().scale(m.Fuzz))
			}
			if rd.dot(h.n) <= 0 {
				return sum
			}
			o, d = h.p, rd.unit()
			thr = thr.mul(m.Color)
		case Glass:
			ratio := m.IOR
			if h.front {
				ratio = 1 / m.IOR
			}
			cos := min(-d.dot(h.n), 1)
			sin := math.Sqrt(max(0, 1-cos*cos))
			u := r.float()
			if ratio*sin > 1 || schlick(cos, ratio) > u {
				d = reflect(d, h.n)
			} else {
				perp := d.add(h.n.scale(cos)).scale(ratio)
				par := h.n.scale(-math.Sqrt(math.Abs(1 - perp.dot(perp))))
				d = perp.add(par).unit()
			}
			o = h.p
			thr = thr.mul(m.Color)
		}
		if bounce >= rouletteDepth {
			p := thr.maxComponent()
			if p < 1 {
				if r.float() >= p {
					break
				}
				thr = thr.scale(1 / p)
			}
		}
	}
	return sum
}

// schlick approximates the Fresnel reflectance.
func schlick(cos, ratio float64) float64 {
	r0 := (1 - ratio) / (1 + ratio)
	r0 *= r0
	x := 1 - cos
	return r0 + (1-r0)*x*x*x*x*x
}

// pixel renders pixel (x, y) of the job and writes its RGBA bytes to dst.
// Its samples lie on a jittered nx×ny grid over the pixel, nx = ceil(√N),
// ny = ceil(N/nx), filled row by row; they are summed in order.
func (c *compiled) pixel(vw *view, job *Job, x, y int, dst []byte) {
	r := pixelRNG(job.Seed, x, y)
	n := job.Samples
	nx := int(math.Ceil(math.Sqrt(float64(n))))
	ny := (n + nx - 1) / nx
	var sum Vec3
	for s := range n {
		sx, sy := s%nx, s/nx
		fx := float64(x) + (float64(sx)+r.float())/float64(nx)
		fy := float64(y) + (float64(sy)+r.float())/float64(ny)
		o, d := vw.ray(fx, fy, &r)
		l := c.trace(o, d, job.Depth, &r)
		sum = sum.add(Vec3{min(l.X, sampleClamp), min(l.Y, sampleClamp), min(l.Z, sampleClamp)})
	}
	col := sum.scale(1 / float64(n))
	dst[0], dst[1], dst[2], dst[3] = toByte(col.X), toByte(col.Y), toByte(col.Z), 255
}

// toByte tone-maps a linear radiance (ACES filmic approximation by
// K. Narkowicz) and encodes it as an 8-bit sRGB value.
func toByte(v float64) byte {
	if !(v > 0) {
		return 0
	}
	v = v * (2.51*v + 0.03) / (v*(2.43*v+0.59) + 0.14)
	if v >= 1 {
		return 255
	}
	if v <= 0.0031308 {
		v *= 12.92
	} else {
		v = 1.055*math.Pow(v, 1/2.4) - 0.055
	}
	return byte(math.Floor(v*255 + 0.5))
}

// renderRect renders the pixels of rect into dst, which holds rows of
// stride bytes starting at rect's top left corner. It stops early, returning
// ctx's error, if ctx ends; it checks between rows.
func (c *compiled) renderRect(ctx context.Context, vw *view, job *Job, rect image.Rectangle, dst []byte, stride int) error {
	for y := rect.Min.Y; y < rect.Max.Y; y++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		row := dst[(y-rect.Min.Y)*stride:]
		for x := rect.Min.X; x < rect.Max.X; x++ {
			c.pixel(vw, job, x, y, row[(x-rect.Min.X)*4:])
		}
		// Let network goroutines in: on a node whose cores all render, a
		// message would otherwise wait for preemption at every hop.
		runtime.Gosched()
	}
	return nil
}

// prepare checks that job and scene go together and returns the compiled
// scene and the job with its defaults.
func prepare(scene *Scene, job Job) (*compiled, Job, error) {
	job = job.WithDefaults()
	if job.Scene == "" && scene != nil {
		job.Scene = scene.Name
	}
	if err := job.Validate(); err != nil {
		return nil, job, err
	}
	if scene != nil && job.Scene != scene.Name {
		return nil, job, fmt.Errorf("%w: job is for scene %q, not %q", ErrInvalidJob, job.Scene, scene.Name)
	}
	c, err := compile(scene)
	if err != nil {
		return nil, job, err
	}
	return c, job, nil
}

// RenderTile renders tile number tile of job (see Job.TileRect) and returns
// its pixels as RGBA bytes, row by row, 4 bytes per pixel, alpha 255. Zero
// fields of job take their defaults and an empty job.Scene means scene.Name.
//
// The bytes depend only on the scene, the job's Seed, Width, Height, Samples
// and Depth, and the tile's place: the same tile rendered by any goroutine on
// any node running the same binary is identical.
func RenderTile(scene *Scene, job Job, tile int) ([]byte, error) {
	c, job, err := prepare(scene, job)
	if err != nil {
		return nil, err
	}
	return c.renderTile(context.Background(), &job, tile)
}

func (c *compiled) renderTile(ctx context.Context, job *Job, tile int) ([]byte, error) {
	rect, err := job.TileRect(tile)
	if err != nil {
		return nil, err
	}
	vw := newView(c.camera, job.Width, job.Height)
	buf := make([]byte, rect.Dx()*rect.Dy()*4)
	if err := c.renderRect(ctx, &vw, job, rect, buf, rect.Dx()*4); err != nil {
		return nil, err
	}
	return buf, nil
}

// Render renders the whole frame on this machine, tile by tile on
// GOMAXPROCS goroutines. The image is byte-identical to the same job rendered
// over the mesh by any number of workers. Zero fields of job take their
// defaults and an empty job.Scene means scene.Name. Render returns ctx's
// error if ctx ends first.
func Render(ctx context.Context, scene *Scene, job Job) (*image.RGBA, error) {
	c, job, err := prepare(scene, job)
	if err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, job.Width, job.Height))
	vw := newView(c.camera, job.Width, job.Height)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for g := range errs {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= job.Tiles() {
					return
				}
				rect, _ := job.TileRect(i)
				off := img.PixOffset(rect.Min.X, rect.Min.Y)
				if err := c.renderRect(ctx, &vw, &job, rect, img.Pix[off:], img.Stride); err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// fingerprint identifies a scene and the renderer's arithmetic on this
// machine: a hash of the compiled scene and of a tiny probe render of it.
// Nodes whose fingerprints differ could render different bytes for the same
// tile, so a worker refuses jobs whose fingerprint is not its own.
func (c *compiled) fingerprint() uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(f float64) {
		binary.BigEndian.PutUint64(b[:], math.Float64bits(f))
		h.Write(b[:])
	}
	vec := func(v Vec3) { put(v.X); put(v.Y); put(v.Z) }
	mat := func(m Material) {
		put(float64(m.Kind))
		vec(m.Color)
		vec(m.Checker)
		put(m.CheckerSize)
		put(m.Fuzz)
		put(m.IOR)
	}
	put(rendererVersion)
	cam := c.camera
	vec(cam.From)
	vec(cam.At)
	vec(cam.Up)
	put(cam.FOV)
	put(cam.Aperture)
	put(cam.Focus)
	vec(c.sky.Horizon)
	vec(c.sky.Zenith)
	put(float64(len(c.spheres)))
	for _, s := range c.spheres {
		vec(s.center)
		put(s.r)
		mat(s.mat)
	}
	put(float64(len(c.planes)))
	for _, p := range c.planes {
		vec(p.point)
		vec(p.normal)
		mat(p.mat)
	}
	probe := Job{Scene: "probe", Width: 16, Height: 12, Samples: 2, Depth: 8, Seed: 1, TileSize: 16}
	vw := newView(c.camera, probe.Width, probe.Height)
	px := make([]byte, probe.Width*probe.Height*4)
	_ = c.renderRect(context.Background(), &vw, &probe, image.Rect(0, 0, probe.Width, probe.Height), px, probe.Width*4)
	h.Write(px)
	return h.Sum64()
}
