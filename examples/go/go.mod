module hookgate.example/receiver

go 1.19
