package render

import "math"

// Vec3 is a point, a direction or a linear RGB colour.
type Vec3 struct {
	X, Y, Z float64 // coordinates, or red, green and blue
}

// V returns the vector (x, y, z).
func V(x, y, z float64) Vec3 { return Vec3{x, y, z} }

func (a Vec3) add(b Vec3) Vec3       { return Vec3{a.X + b.X, a.Y + b.Y, a.Z + b.Z} }
func (a Vec3) sub(b Vec3) Vec3       { return Vec3{a.X - b.X, a.Y - b.Y, a.Z - b.Z} }
func (a Vec3) mul(b Vec3) Vec3       { return Vec3{a.X * b.X, a.Y * b.Y, a.Z * b.Z} }
func (a Vec3) scale(s float64) Vec3  { return Vec3{a.X * s, a.Y * s, a.Z * s} }
func (a Vec3) dot(b Vec3) float64    { return a.X*b.X + a.Y*b.Y + a.Z*b.Z }
func (a Vec3) length() float64       { return math.Sqrt(a.dot(a)) }
func (a Vec3) neg() Vec3             { return Vec3{-a.X, -a.Y, -a.Z} }
func (a Vec3) maxComponent() float64 { return max(a.X, a.Y, a.Z) }

func (a Vec3) cross(b Vec3) Vec3 {
	return Vec3{a.Y*b.Z - a.Z*b.Y, a.Z*b.X - a.X*b.Z, a.X*b.Y - a.Y*b.X}
}

func (a Vec3) unit() Vec3 {
	l := a.length()
	if l == 0 {
		return a
	}
	return a.scale(1 / l)
}

// finite reports whether every component is a finite number.
func (a Vec3) finite() bool {
	return !math.IsNaN(a.X+a.Y+a.Z) && !math.IsInf(a.X+a.Y+a.Z, 0)
}

func (a Vec3) nonNegative() bool { return a.X >= 0 && a.Y >= 0 && a.Z >= 0 }

func vmin(a, b Vec3) Vec3 { return Vec3{min(a.X, b.X), min(a.Y, b.Y), min(a.Z, b.Z)} }
func vmax(a, b Vec3) Vec3 { return Vec3{max(a.X, b.X), max(a.Y, b.Y), max(a.Z, b.Z)} }

func (a Vec3) axis(i int) float64 {
	switch i {
	case 0:
		return a.X
	case 1:
		return a.Y
	}
	return a.Z
}

// reflect mirrors v about the unit normal n.
func reflect(v, n Vec3) Vec3 { return v.sub(n.scale(2 * v.dot(n))) }

// onb returns two unit vectors that, with the unit vector w, form an
// orthonormal basis (Duff et al., "Building an Orthonormal Basis, Revisited").
func onb(w Vec3) (u, v Vec3) {
	s := math.Copysign(1, w.Z)
	a := -1 / (s + w.Z)
	b := w.X * w.Y * a
	u = Vec3{1 + s*w.X*w.X*a, s * b, -s * w.X}
	v = Vec3{b, s + w.Y*w.Y*a, -w.Y}
	return u, v
}
