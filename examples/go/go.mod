module github.com/libmae/libmae/examples/go

go 1.19
