module github.com/vtower/vtower/examples/go

go 1.19

require github.com/vtower/vtower/go/vtower v0.0.0

// Build against the bindings in this repository; outside it, drop this line and
// require a released version instead.
replace github.com/vtower/vtower/go/vtower => ../../go/vtower
