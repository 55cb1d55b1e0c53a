/* mae reconstruct: being written this session. */
#include "cli.h"

int cmd_reconstruct(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("reconstruct", "not built yet");
}
