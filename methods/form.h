// The form of a loss where a paper's formula and the code behind its published table differ: `reference` (the
// default: what produced the numbers) or `paper`. Declared on a method with MethodInfo::form (methods/method.h);
// the loss functions of methods/relation_losses.h and methods/logit_losses.h take it.
#pragma once

namespace kd {

enum class Form { Reference, Paper };

}  // namespace kd
