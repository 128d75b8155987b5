#include "launch/cli.h"

int main(int argc, char** argv) { return lr::run_cli(argc, argv); }
