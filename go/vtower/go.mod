module github.com/vtower/vtower/go/vtower

go 1.19
