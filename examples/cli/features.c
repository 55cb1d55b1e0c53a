/* mae features: being written this session. */
#include "cli.h"

int cmd_features(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("features", "not built yet");
}
