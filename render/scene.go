package render

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// MaterialKind says how a surface scatters light.
type MaterialKind uint8

// Material kinds.
const (
	// Diffuse is a Lambertian surface of colour Color (or a checkerboard of
	// Color and Checker in the XZ plane, CheckerSize units per square).
	Diffuse MaterialKind = iota
	// Metal reflects like a mirror tinted by Color; Fuzz in [0, 1] blurs the
	// reflection.
	Metal
	// Glass is a dielectric with index of refraction IOR (1.5 if zero): it
	// refracts, and reflects with Schlick's approximation of Fresnel.
	// Color tints what passes through it (white if zero).
	Glass
	// Light emits radiance Color and reflects nothing. Only spheres may be
	// lights; they are sampled directly (next-event estimation), which gives
	// soft shadows with few samples.
	Light
)

// Material describes a surface.
type Material struct {
	// Kind says how the surface scatters light.
	Kind MaterialKind
	// Color is the albedo (Diffuse, Metal), the tint (Glass) or the emitted
	// radiance (Light), in linear RGB.
	Color Vec3
	// Checker is the second colour of a Diffuse checkerboard.
	Checker Vec3
	// CheckerSize is the side of a checkerboard square; zero means a plain
	// colour.
	CheckerSize float64
	// Fuzz blurs a Metal reflection: 0 is a mirror, 1 is very rough.
	Fuzz float64
	// IOR is a Glass's index of refraction; zero means 1.5.
	IOR float64
}

// Sphere is a sphere in the scene.
type Sphere struct {
	Center   Vec3     // centre
	Radius   float64  // radius, positive
	Material Material // surface
}

// Plane is an infinite two-sided plane through Point, perpendicular to Normal.
type Plane struct {
	Point, Normal Vec3     // a point of the plane, and its normal (any length but zero)
	Material      Material // surface, on both sides; not a Light
}

// Camera is a thin-lens camera.
type Camera struct {
	// From is the eye, At the point looked at, Up the world's up direction.
	From, At, Up Vec3
	// FOV is the vertical field of view in degrees, in (0, 180).
	FOV float64
	// Aperture is the lens diameter; zero is a pinhole (everything sharp).
	Aperture float64
	// Focus is the distance in focus; zero means |At - From|.
	Focus float64
}

// Sky is the background: radiance that blends from Horizon (rays going
// sideways or down) to Zenith (rays going straight up). A black sky leaves the
// scene lit by its lights only.
type Sky struct {
	Horizon, Zenith Vec3 // radiance, linear RGB
}

// Scene is everything a renderer needs besides the job's settings. Scenes are
// referred to by Name in jobs sent over the mesh, so every node must resolve a
// name to the same scene (see Lookup and WorkerConfig.Scenes).
//
// A Scene is a plain value; the renderer copies what it needs when a render
// starts, so changing a Scene during a render does not affect it.
type Scene struct {
	// Name identifies the scene in a Job: 1 to 64 bytes of [a-z0-9._-].
	Name    string
	Camera  Camera   // the view
	Sky     Sky      // the background, and light from every direction
	Spheres []Sphere // at most 65536, lights among them
	Planes  []Plane  // at most 64
}

// Errors about scenes.
var (
	// ErrInvalidScene is returned for a scene that cannot be rendered.
	ErrInvalidScene = errors.New("render: invalid scene")
	// ErrUnknownScene is returned by Lookup for a name without a scene.
	ErrUnknownScene = errors.New("render: unknown scene")
)

const maxSceneName = 64

func validSceneName(s string) bool {
	if len(s) == 0 || len(s) > maxSceneName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate reports whether the scene can be rendered: a valid name, a camera
// that looks somewhere, positive radii, non-zero plane normals, finite
// numbers, non-negative colours, and lights on spheres only.
func (s *Scene) Validate() error {
	if s == nil {
		return fmt.Errorf("%w: nil", ErrInvalidScene)
	}
	if !validSceneName(s.Name) {
		return fmt.Errorf("%w: name %q is not 1-64 bytes of [a-z0-9._-]", ErrInvalidScene, s.Name)
	}
	c := s.Camera
	if !c.From.finite() || !c.At.finite() || !c.Up.finite() || c.At.sub(c.From).length() == 0 ||
		c.At.sub(c.From).unit().cross(c.Up).length() < 1e-9 {
		return fmt.Errorf("%w: camera does not look anywhere", ErrInvalidScene)
	}
	if !(c.FOV > 0 && c.FOV < 180) || !(c.Aperture >= 0) || !(c.Focus >= 0) || math.IsInf(c.Aperture+c.Focus, 0) {
		return fmt.Errorf("%w: camera FOV %v, aperture %v, focus %v", ErrInvalidScene, c.FOV, c.Aperture, c.Focus)
	}
	if !s.Sky.Horizon.finite() || !s.Sky.Zenith.finite() || !s.Sky.Horizon.nonNegative() || !s.Sky.Zenith.nonNegative() {
		return fmt.Errorf("%w: sky colours", ErrInvalidScene)
	}
	if len(s.Spheres) > maxSpheres || len(s.Planes) > maxPlanes {
		return fmt.Errorf("%w: more than %d spheres or %d planes", ErrInvalidScene, maxSpheres, maxPlanes)
	}
	for i, sp := range s.Spheres {
		if !sp.Center.finite() || !(sp.Radius > 0) || math.IsInf(sp.Radius, 0) {
			return fmt.Errorf("%w: sphere %d: centre %v radius %v", ErrInvalidScene, i, sp.Center, sp.Radius)
		}
		if err := sp.Material.validate(); err != nil {
			return fmt.Errorf("%w: sphere %d: %w", ErrInvalidScene, i, err)
		}
	}
	for i, p := range s.Planes {
		if !p.Point.finite() || !p.Normal.finite() || p.Normal.length() == 0 {
			return fmt.Errorf("%w: plane %d: point %v normal %v", ErrInvalidScene, i, p.Point, p.Normal)
		}
		if p.Material.Kind == Light {
			return fmt.Errorf("%w: plane %d: only spheres can be lights", ErrInvalidScene, i)
		}
		if err := p.Material.validate(); err != nil {
			return fmt.Errorf("%w: plane %d: %w", ErrInvalidScene, i, err)
		}
	}
	return nil
}

// Limits on scene size, so that a scene stays cheap to prepare per job.
const (
	maxSpheres = 1 << 16
	maxPlanes  = 64
)

func (m Material) validate() error {
	if m.Kind > Light {
		return fmt.Errorf("unknown material kind %d", m.Kind)
	}
	if !m.Color.finite() || !m.Checker.finite() || !m.Color.nonNegative() || !m.Checker.nonNegative() {
		return errors.New("colours must be finite and non-negative")
	}
	if !(m.CheckerSize >= 0) || math.IsInf(m.CheckerSize, 0) || !(m.Fuzz >= 0 && m.Fuzz <= 1) {
		return fmt.Errorf("checker size %v, fuzz %v", m.CheckerSize, m.Fuzz)
	}
	if m.IOR != 0 && !(m.IOR >= 1 && m.IOR <= 4) {
		return fmt.Errorf("index of refraction %v not in [1, 4]", m.IOR)
	}
	return nil
}

// Lookup returns a fresh copy of the built-in scene called name. The only
// built-in scene is "default" (see Default).
func Lookup(name string) (*Scene, error) {
	switch name {
	case DefaultSceneName:
		return Default(), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownScene, name)
}

// DefaultSceneName is the name of the scene Default returns.
const DefaultSceneName = "default"

// Default returns the built-in scene: a checkered ground, a large glass
// sphere between a matte and a brushed-metal one, a field of small diffuse,
// metal and glass spheres placed by a fixed pseudo-random sequence, and a warm
// spherical light above that casts soft shadows under a dusk sky. It is the
// same on every call and every machine.
func Default() *Scene {
	s := &Scene{
		Name: DefaultSceneName,
		Camera: Camera{
			From: V(13, 2.2, 3.2), At: V(0, 0.6, 0), Up: V(0, 1, 0),
			FOV: 22, Aperture: 0.06, Focus: 10,
		},
		Sky: Sky{Horizon: V(0.11, 0.10, 0.13), Zenith: V(0.02, 0.04, 0.11)},
		Planes: []Plane{{
			Point: V(0, 0, 0), Normal: V(0, 1, 0),
			Material: Material{Kind: Diffuse, Color: V(0.72, 0.72, 0.70), Checker: V(0.12, 0.13, 0.16), CheckerSize: 1},
		}},
		Spheres: []Sphere{
			{Center: V(0, 1, 0), Radius: 1, Material: Material{Kind: Glass, IOR: 1.5, Color: V(1, 1, 1)}},
			{Center: V(-4, 1, 0), Radius: 1, Material: Material{Kind: Diffuse, Color: V(0.55, 0.18, 0.10)}},
			{Center: V(4, 1, 0), Radius: 1, Material: Material{Kind: Metal, Color: V(0.85, 0.75, 0.55), Fuzz: 0.08}},
			{Center: V(-5, 3.1, -3.4), Radius: 0.75, Material: Material{Kind: Light, Color: V(52, 40, 28)}},
		},
	}
	// A field of small spheres; positions and materials come from a fixed
	// splitmix64 sequence, so the scene is identical everywhere.
	x := uint64(0x5eed)
	next := func() float64 {
		x += 0x9e3779b97f4a7c15
		return float64(splitmix64(x)>>11) * 0x1p-53
	}
	big := []Vec3{V(0, 1, 0), V(-4, 1, 0), V(4, 1, 0)}
	for a := -9; a < 9; a++ {
		for b := -6; b < 6; b++ {
			pick, jx, jz := next(), next(), next()
			r := 0.16 + 0.08*next()
			c := V(float64(a)+0.8*jx, r, float64(b)+0.8*jz)
			clear := true
			for _, p := range big {
				if c.sub(p).length() < 1.1+r {
					clear = false
				}
			}
			if !clear || pick < 0.25 {
				continue
			}
			var m Material
			switch {
			case pick < 0.75:
				m = Material{Kind: Diffuse, Color: V(next()*next(), next()*next(), next()*next())}
			case pick < 0.92:
				m = Material{Kind: Metal, Color: V(0.5+0.5*next(), 0.5+0.5*next(), 0.5+0.5*next()), Fuzz: 0.4 * next()}
			default:
				m = Material{Kind: Glass, IOR: 1.5, Color: V(1, 1, 1)}
			}
			s.Spheres = append(s.Spheres, Sphere{Center: c, Radius: r, Material: m})
		}
	}
	return s
}

// compiled is a scene prepared for rendering: a copy of its objects, a
// bounding volume hierarchy over the spheres, and the list of lights.
type compiled struct {
	spheres []sphere // in BVH order
	planes  []plane
	bvh     []bvhNode
	lights  []int // indexes into spheres of the Light spheres
	sky     Sky
	camera  Camera
}

type sphere struct {
	center Vec3
	r, r2  float64
	mat    Material
}

type plane struct {
	point, normal Vec3
	mat           Material
}

// bvhNode is a node of the flattened BVH: a leaf holds spheres
// [first, first+count); an inner node's left child follows it and its right
// child is at index first.
type bvhNode struct {
	lo, hi       Vec3
	first, count int32
}

// leafSize is the most spheres a BVH leaf holds.
const leafSize = 4

func compile(s *Scene) (*compiled, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	c := &compiled{sky: s.Sky, camera: s.Camera}
	for _, sp := range s.Spheres {
		m := sp.Material
		if m.Kind == Glass {
			if m.IOR == 0 {
				m.IOR = 1.5
			}
			if m.Color == (Vec3{}) {
				m.Color = V(1, 1, 1)
			}
		}
		c.spheres = append(c.spheres, sphere{center: sp.Center, r: sp.Radius, r2: sp.Radius * sp.Radius, mat: m})
	}
	for _, p := range s.Planes {
		m := p.Material
		if m.Kind == Glass {
			if m.IOR == 0 {
				m.IOR = 1.5
			}
			if m.Color == (Vec3{}) {
				m.Color = V(1, 1, 1)
			}
		}
		c.planes = append(c.planes, plane{point: p.Point, normal: p.Normal.unit(), mat: m})
	}
	if len(c.spheres) > 0 {
		c.build(0, len(c.spheres))
	}
	for i, sp := range c.spheres {
		if sp.mat.Kind == Light {
			c.lights = append(c.lights, i)
		}
	}
	return c, nil
}

// build appends the BVH node for spheres [lo, hi), sorting them in place,
// and returns its index. The split is at the median along the widest axis of
// the centres, with a stable sort, so the tree is the same on every run.
func (c *compiled) build(lo, hi int) int {
	idx := len(c.bvh)
	c.bvh = append(c.bvh, bvhNode{})
	box := func(s sphere) (Vec3, Vec3) {
		r := V(s.r, s.r, s.r)
		return s.center.sub(r), s.center.add(r)
	}
	bl, bh := box(c.spheres[lo])
	cl, ch := c.spheres[lo].center, c.spheres[lo].center
	for _, s := range c.spheres[lo+1 : hi] {
		l, h := box(s)
		bl, bh = vmin(bl, l), vmax(bh, h)
		cl, ch = vmin(cl, s.center), vmax(ch, s.center)
	}
	c.bvh[idx].lo, c.bvh[idx].hi = bl, bh
	if hi-lo <= leafSize {
		c.bvh[idx].first, c.bvh[idx].count = int32(lo), int32(hi-lo)
		return idx
	}
	ext := ch.sub(cl)
	axis := 0
	if ext.Y > ext.X {
		axis = 1
	}
	if ext.Z > ext.axis(axis) {
		axis = 2
	}
	part := c.spheres[lo:hi]
	sort.SliceStable(part, func(i, j int) bool { return part[i].center.axis(axis) < part[j].center.axis(axis) })
	mid := lo + (hi-lo)/2
	c.build(lo, mid)
	right := c.build(mid, hi)
	c.bvh[idx].first = int32(right)
	return idx
}
