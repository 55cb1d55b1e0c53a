module libmae.example/mae

go 1.19
