package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	many := func(n int, last string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		return b.String() + last + "}"
	}
	cases := []struct {
		doc  string
		want error
	}{
		{`{}`, nil},
		{` {"a":1,"b":[1,2,{"a":2}],"c":{"a":{"a":null}}} `, nil},
		{`"x"`, nil},
		{`-0.5e+10`, nil},
		{`{"a":1,"A":2}`, nil},
		{`{"a":1,"a":2}`, ErrDuplicate},
		{`{"a":1,"\u0061":2}`, ErrDuplicate},
		{`{"\/":1,"/":2}`, ErrDuplicate},
		{`{"\ud83d\ude00":1,"😀":2}`, ErrDuplicate},
		{`{"\ud800":1,"\ufffd":2}`, ErrDuplicate},
		{"{\"\xff\":1,\"\xfe\":2}", ErrDuplicate},
		{`{"x":[{"acl":{"pub":1,"pub":2}}]}`, ErrDuplicate},
		{many(40, `"z":1`), nil},
		{many(40, `"k3":1`), ErrDuplicate},
		{many(40, `"k\u0033\u0039":1`), ErrDuplicate},
		{many(40, "\"\xff\":1,\"\xfe\":2"), ErrDuplicate},
		{many(40, `"\ud83d\ude00":1,"😀":2`), ErrDuplicate},
		{strings.Repeat("[", 64) + strings.Repeat("]", 64), nil},
		{strings.Repeat("[", 65) + strings.Repeat("]", 65), ErrDepth},
		{strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65), ErrDepth},
		{strings.Repeat("[", 1<<20), ErrDepth},
		{``, ErrSyntax},
		{`{"a":1}{}`, ErrSyntax},
		{`{"a":1,}`, ErrSyntax},
		{`{"a" 1}`, ErrSyntax},
		{`[01]`, ErrSyntax},
		{`"\x"`, ErrSyntax},
		{`"\u12"`, ErrSyntax},
		{"\"a\nb\"", ErrSyntax},
		{`tru`, ErrSyntax},
		{`1.`, ErrSyntax},
		{`1e`, ErrSyntax},
		{`{"a":1`, ErrSyntax},
	}
	for _, c := range cases {
		name := c.doc
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			if err := Check([]byte(c.doc)); err != c.want {
				t.Fatalf("Check = %v, want %v", err, c.want)
			}
		})
	}
}

func TestCheckSmallObjectsDoNotAllocate(t *testing.T) {
	doc := []byte(`{"iss":"https://idp.example","sub":"d","aud":["a","b"],"exp":1,"iat":1,"nbf":1,"acl":{"pub":["x/#"],"sub":["y/+"]},"\u0073cope":"s"}`)
	if n := testing.AllocsPerRun(100, func() { _ = Check(doc) }); n != 0 {
		t.Errorf("%v allocations per Check", n)
	}
}

// reference is what Check must answer for a document encoding/json accepts: ErrDuplicate when an
// object has two members whose decoded names are equal, ErrDepth when nesting passes maxDepth.
func reference(data []byte) (dup, deep bool) {
	type frame struct {
		names   map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return dup, deep
		}
		if err != nil {
			panic(fmt.Sprintf("token from valid JSON %q: %v", data, err))
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			f := &frame{}
			if tok == json.Delim('{') {
				f.names, f.wantKey = map[string]bool{}, true
			}
			stack = append(stack, f)
			deep = deep || len(stack) > maxDepth
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			} else {
				top = nil
			}
		default:
			if s, ok := tok.(string); ok && top != nil && top.wantKey {
				dup = dup || top.names[s]
				top.names[s] = true
				top.wantKey = false
				continue
			}
		}
		if top != nil && top.names != nil {
			top.wantKey = true // a value ended: a name comes next
		}
	}
}

// FuzzCheck holds Check to encoding/json: it refuses what encoding/json refuses, and for the rest
// answers as the token-level reference does.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":{"a":2}}`, `{"a":1,"\u0061":2}`, `[[[[{"x":[1,{"y":2,"y":3}]}]]]]`,
		`{"\ud83d\ude00":1,"😀":2}`, `{"\ud800\u0041":1,"\ufffdA":2}`, "{\"\xff\":1,\"\xef\xbf\xbd\":2}",
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"ka":10,"kb":11,"kc":12,"kd":13,"ke":14,"kf":15,"kg":16,"k\u0030":17}`,
		strings.Repeat("[", 65) + strings.Repeat("]", 65), `-12.5e-3`, `"\b\f\n\r\t\"\\\/"`, ` true `, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data)
		if !json.Valid(data) {
			if err == nil {
				t.Fatalf("accepted %q, which encoding/json refuses", data)
			}
			return
		}
		dup, deep := reference(data)
		switch {
		case !dup && !deep && err != nil:
			t.Fatalf("refused %q: %v", data, err)
		case (dup || deep) && err == nil:
			t.Fatalf("accepted %q (duplicate %v, too deep %v)", data, dup, deep)
		case dup && !deep && !errors.Is(err, ErrDuplicate), deep && !dup && !errors.Is(err, ErrDepth):
			t.Fatalf("%q: %v, want duplicate %v, too deep %v", data, err, dup, deep)
		}
	})
}

// claimsSet is a realistic JWT access token payload (Keycloak-like, about 1 KiB).
const claimsSet = `{"exp":1764412800,"iat":1764412500,"auth_time":1764412400,"jti":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
"iss":"https://idp.example.com/realms/fleet","aud":["mqtt-broker","account"],"sub":"7d9b2c1e-5a4f-4e3b-9c2d-1a0b9c8d7e6f",
"typ":"Bearer","azp":"device-fleet","sid":"a1b2c3d4-e5f6-7a8b-9c0d-e1f2a3b4c5d6","acr":"1",
"realm_access":{"roles":["offline_access","uma_authorization","device"]},
"resource_access":{"mqtt-broker":{"roles":["publish","subscribe"]},"account":{"roles":["view-profile"]}},
"scope":"openid email profile mqtt","email_verified":true,"name":"Device 0042","preferred_username":"device-0042",
"given_name":"Device","family_name":"0042","email":"device-0042@fleet.example.com",
"acl":{"pub":["fleet/device-0042/#"],"sub":["cmd/device-0042/#","broadcast/#"]}}`

// The checker runs on every JWT checked locally (header and claims) and every introspection answer,
// on Mosquitto 2.0's broker thread. BenchmarkCheck/decoder is the same check built on encoding/json's
// tokenizer, the reference the fuzz test compares with: the figure this package is written to beat.
func BenchmarkCheck(b *testing.B) {
	data := []byte(claimsSet)
	if Check(data) != nil {
		b.Fatal("claims set refused")
	}
	b.Run("strictjson", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			Check(data)
		}
	})
	b.Run("decoder", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			reference(data)
		}
	})
}
