"""The intents. Each function writes one complete dialogue; assistant turns state only the company's facts."""

from __future__ import annotations

from collections.abc import Callable

from .dialogue import Dialogue
from .phrases import ASK_ORDER, PAST, RECENT, WEEKDAYS

INTENT_DESCRIPTIONS: dict[str, str] = {
    "order_status": "where is my order; what 'Processing' / 'Dispatched' mean",
    "return_item": "how to return an item, 30-day window, condition, exchanges",
    "refund_status": "when a refund for a return arrives",
    "damaged_item": "item arrived damaged: photo within 14 days, replacement or refund",
    "shipping_options": "delivery times and costs, free-shipping threshold, destinations",
    "delivery_delay": "parcel late or tracking stuck; escalation to the delivery team",
    "change_address": "change the delivery address (only while 'Processing')",
    "cancel_order": "cancel an order (only while 'Processing'), otherwise return it",
    "billing_double_charge": "charged twice: pending authorisation vs. duplicate payment",
    "invoice_request": "download an invoice; invoice with company details",
    "payment_methods": "accepted and unavailable payment methods",
    "password_reset": "'Forgot password' link, expired links, missing email",
    "delete_account": "how to delete an account and what happens to data",
    "warranty_claim": "appliance fault under the 2-year warranty",
    "human_handoff": "customer asks for a human; hours and transfer",
    "product_availability": "stock questions, 'Notify me', no pre-orders",
    "discount_code_problem": "discount code rejected or forgotten",
    "complaint": "customer complaint is acknowledged and logged",
    "contact_info": "opening hours, phone, email",
    "out_of_scope": "unrelated request, politely redirected to support topics",
}
INTENTS: tuple[str, ...] = tuple(INTENT_DESCRIPTIONS)


def order_status(d: Dialogue) -> None:
    given = d.chance(0.2)
    if given:
        d.u(d.hi() + d.pick(("Could you check on order {o}? I ordered it {when}.", "Any news on {o}?",
                             "what's happening with my order {o}")), when=d.pick(PAST))
    else:
        d.u(d.hi() + d.pick((
            "Where is my order?", "Can you tell me where my order is?",
            "I ordered the {p} {when} and I'm wondering when it will arrive.",
            "Any update on my order? I placed it {when}.", "has my {s} shipped yet?",
            "I'd like to check the status of my order.",
        )), when=d.pick(PAST))
        d.a(d.ahi() + "I can help with that. " + d.pick(ASK_ORDER))
        d.give_order()
    d.a(d.pick((
        "Thanks! You can follow {o} under My orders: it shows the current status and, once the parcel has "
        "left our warehouse, a tracking link. What does the status say at the moment?",
        "Thanks. I can't see live tracking in this chat, but My orders shows the status of {o} and, after "
        "dispatch, a tracking link. What status do you see there?",
    )))
    if d.chance(0.45):
        d.u(d.pick(("It says Processing.", "Still 'Processing'.", "it says processing", "Processing, apparently.")))
        d.a(d.pick((
            "'Processing' means we're preparing it and it hasn't left our warehouse yet. You'll get an email "
            "with the tracking link once it's dispatched; standard delivery then takes {standard_shipping}, "
            "express {express_shipping}.",
            "That means it's still being prepared in our warehouse. As soon as it's dispatched you'll get an "
            "email with tracking; delivery then takes {standard_shipping} with standard shipping.",
        )))
        if d.chance(0.4):
            d.u(d.pick(("Can I still change the delivery address?", "Could I still cancel it?")))
            d.a("Yes, while the status is still 'Processing' that's possible. Just tell me what you'd like "
                "to change and I'll pass it to our orders team.")
    else:
        d.u(d.pick(("It says Dispatched on {day}.", "dispatched, since {day}", "Dispatched. Tracking hasn't "
                    "updated since {day} though.")), day=d.pick(WEEKDAYS))
        d.a(d.pick((
            "Great, it's on its way! Standard delivery takes {standard_shipping} after dispatch and express "
            "{express_shipping}; the tracking link in My orders shows the latest update.",
            "Then it has left our warehouse. Tracking can lag by a day, but standard delivery takes "
            "{standard_shipping} after dispatch. If it hasn't arrived by then, message us and we'll chase "
            "the courier.",
        )))
        if d.chance(0.3):
            d.u(d.pick(("Can I still cancel it?", "Is it too late to cancel?")))
            d.a("Once an order is dispatched it can't be cancelled, but you can return it {return_window} "
                "for a refund.")
    d.close()


def return_item(d: Dialogue) -> None:
    if d.chance(0.2):
        d.u(d.hi() + d.pick(("What's your return policy?", "How do returns work?", "how long do i have to return stuff")))
        d.a(d.ahi() + "You can return items {return_window}, complete and in their original condition. "
            "Returns are free: start one under My orders and print the prepaid label. Once the return "
            "reaches us, we refund your original payment method within {refund_time}.")
    else:
        d.u(d.hi() + d.pick((
            "I'd like to return the {p} I bought.", "How do I return something?",
            "The {s} I bought doesn't {reason}. Can I send it back?",
            "I want to send back my {s}, it doesn't {reason}.", "Can I return my {s}? I changed my mind.",
        )), reason=d.pick(("match my kitchen", "fit on my worktop", "look like the photos", "suit the room")))
        d.a(d.ahi() + "Of course! You can return items {return_window}. " + d.pick(ASK_ORDER))
        late = d.chance(0.15)
        days = d.rng.randint(35, 60) if late else d.rng.randint(2, 28)
        suffix = d.pick((" It arrived {k} days ago.", " Delivered {k} days ago.")).replace("{k}", str(days))
        d.give_order(suffix if (late or d.chance(0.3)) else "")
        if late:
            d.a("I'm sorry, {o} was delivered {k} days ago, so it's outside our 30-day return window."
                + (" If the {s} develops a fault, it's still covered by our 2-year warranty." if d.item.appliance
                   else ""), k=str(days))
            d.u(d.pick(("Oh well, thanks anyway.", "ok, understood.", "That's a shame. Thanks for checking.")))
            d.a(d.pick(("Sorry I couldn't do more{n}. Take care!", "I understand, sorry about that{n}. Have a good day.")))
            return
        d.a("Thanks! Open {o} under My orders, choose 'Return an item' and print the free prepaid label. "
            "Please send the {s} back complete and in its original condition. Once it reaches our "
            "warehouse, the refund goes to your original payment method within {refund_time}.")
    follow = d.rng.randrange(5)
    if follow == 0:
        d.u(d.pick(("Do I need the original box?", "I threw away the box, is that ok?")))
        d.a("That's fine: the original box is welcome but not required. Just pack the item securely with "
            "all its parts.")
    elif follow == 1:
        d.u(d.pick(("Can I exchange it for a different colour instead?", "Could I swap it for another model?")))
        d.a("We don't do direct exchanges, I'm afraid: return it for a refund and place a new order for "
            "the one you want.")
    elif follow == 2:
        d.u(d.pick(("How long does the refund take?", "When do I get my money back?")))
        d.a("Once your return reaches our warehouse, the refund goes to your original payment method within "
            "{refund_time}. We'll email you when the return arrives.")
    elif follow == 3:
        d.u(d.pick(("Is return shipping free?", "do i have to pay for the return postage?")))
        d.a("No cost to you: the prepaid return label from My orders is free.")
    d.close()


def refund_status(d: Dialogue) -> None:
    d.u(d.hi() + d.pick((
        "I returned the {p} {when} but still haven't got my money back.", "When will I get my refund?",
        "I'm checking on a refund for a return I sent {when}.", "where is my refund??",
        "My refund hasn't arrived yet.",
    )), when=d.pick(PAST))
    d.a(d.ahi() + d.pick(("Let me help. ", "Sorry for the wait! ", "")) + d.pick(ASK_ORDER))
    d.give_order()
    d.a("Thanks. Refunds go to your original payment method within {refund_time} after the return reaches "
        "our warehouse, and we email you when it arrives. Have you had that email for {o} yet?")
    branch = d.rng.randrange(3)
    if branch == 0:
        d.u(d.pick(("Yes, it was received {r}.", "Yes, got it {r}.", "yep, {r}")), r=d.pick(RECENT))
        d.a("Then your refund is on its way and should show within {refund_time} of that email. Some banks "
            "take an extra day or two to display it.")
    elif branch == 1:
        d.u(d.pick(("Yes, over two weeks ago.", "Yes, and that was almost three weeks ago!", "Yes, ages ago.")))
        d.a("That's longer than it should take, sorry! I've passed {o} to our payments team; they'll check "
            "it and email you {email_reply_time}.")
    else:
        d.u(d.pick(("No, not yet.", "Not yet, no.", "no email so far")))
        d.a("Then it probably hasn't reached us yet, as returns can take a few days in transit. You'll get "
            "an email when it arrives, and your refund follows within {refund_time}.")
    if d.chance(0.15):
        d.u(d.pick(("Can you send it to a different card? My old one expired.", "My card has expired, is that a problem?")))
        d.a("Refunds can only go to the original payment method. If that card has expired or been closed, "
            "your bank will pass the money on to your current account.")
    elif d.chance(0.15):
        d.u(d.pick(("Could the refund go to my PayPal instead of my card?", "Can I get it as a gift card instead?")))
        d.a("Refunds can only go to the original payment method, so it goes back to whatever you paid with.")
    d.close()


def damaged_item(d: Dialogue) -> None:
    damage = d.pick(d.item.damage)
    d.u(d.hi() + d.pick((
        "My {s} arrived damaged.", "The {p} I received is broken: {dmg}.",
        "I just opened my parcel and {dmg}. It's the {s}.", "Order came today and the {s} is damaged :(",
        "the {s} I ordered came broken, {dmg}",
    )), dmg=damage)
    d.a(d.ahi() + d.pick(("I'm so sorry it arrived like that! ", "Oh no, sorry about that! ")) + d.pick(ASK_ORDER))
    late = d.chance(0.1)
    suffix = " It arrived three weeks ago." if late else d.pick((" It arrived {r}.", "", "")).replace(
        "{r}", d.pick(RECENT))
    d.give_order(suffix)
    if late:
        d.a("Thanks. I'm sorry, but damage needs to be reported within 14 days of delivery, so I can't log "
            "this as damaged on arrival."
            + (" If it's a fault rather than transport damage, our 2-year warranty covers it." if d.item.appliance
               else "") + " I can pass you to a colleague if you'd like to discuss it.")
        d.close(force=True)
        return
    d.a("Thanks. Please email a photo of the damage to {email} with {o} in the subject; damage needs to be "
        "reported within 14 days of delivery. We'll then send a replacement or a full refund, whichever "
        "you prefer.")
    follow = d.rng.randrange(5)
    if follow == 0:
        d.u(d.pick(("Do I have to send it back?", "Should I post the broken one back to you?")))
        d.a("Please keep it for now. If we need it back, we'll email you a free return label.")
    elif follow == 1:
        d.u(d.pick(("Can I get a refund instead of a replacement?", "I'd rather have my money back.")))
        d.a("Yes, it's your choice. A refund goes to your original payment method within {refund_time}.")
    elif follow == 2:
        d.u(d.pick(("I threw the box away, is that a problem?", "Do you need a photo of the box too?")))
        d.a("Not at all: a clear photo of the damaged item is enough.")
    elif follow == 3:
        d.u(d.pick(("How long will a replacement take?", "When would the replacement arrive?")))
        d.a("Replacements are sent free of charge with standard shipping, which takes {standard_shipping} "
            "after dispatch.")
    d.close()


def shipping_options(d: Dialogue) -> None:
    q = d.rng.randrange(3)
    if q == 0:
        d.u(d.hi() + d.pick(("How long does delivery take?", "What are your shipping options?",
                             "how much is delivery?", "What does shipping cost?")))
        d.a(d.ahi() + "Standard shipping takes {standard_shipping} and costs {standard_shipping_cost}, "
            "and it's free on orders over {free_shipping_threshold}. Express takes {express_shipping} and "
            "costs {express_shipping_cost}.")
    elif q == 1:
        d.u(d.hi() + d.pick(("Do you have next-day delivery?", "Can I get my {s} delivered tomorrow?",
                             "Is there a faster shipping option?")))
        d.a(d.ahi() + "We don't offer guaranteed next-day delivery, but express takes {express_shipping} and "
            "costs {express_shipping_cost}. Standard shipping takes {standard_shipping}.")
    else:
        d.u(d.hi() + d.pick(("Do you offer free shipping?", "Is delivery free?")))
        d.a(d.ahi() + "Yes, we offer {free_shipping}. Below that, standard shipping costs "
            "{standard_shipping_cost}.")
    follow = d.rng.randrange(4)
    if follow == 0:
        if d.chance(0.5):
            d.u(d.pick(("My basket is {amt}. Do I get free shipping?", "My order comes to {amt}, is shipping free?")),
                amt=d.pick(d.company.baskets_over))
            d.a("Yes, orders over {free_shipping_threshold} get free standard shipping, so yours qualifies. "
                "Express would still cost {express_shipping_cost}.")
        else:
            amt, gap = d.pick(d.company.baskets_under)
            d.u(d.pick(("My basket is {amt}. Do I get free shipping?", "My order comes to {amt}, is shipping free?")),
                amt=amt)
            d.a("Not quite: free standard shipping starts at orders over {free_shipping_threshold}, so you'd need to add "
                "more than {gap}. Otherwise standard shipping is {standard_shipping_cost}.", gap=gap)
    elif follow == 1:
        if d.chance(0.6):
            d.u(d.pick(("Do you ship to {c}?", "Can you deliver to {c}?")),
                c=d.pick(d.company.countries_delivered))
            d.a("Yes, we deliver there: we ship to {shipping_area}.")
        else:
            d.u(d.pick(("Do you ship to {c}?", "Can you deliver to {c}?")),
                c=d.pick(d.company.countries_not_delivered))
            d.a("Sorry, we currently only ship to {shipping_area}, so we can't deliver there.")
    elif follow == 2:
        d.u(d.pick(("Do weekends count?", "Is that counted from when I order?")))
        d.a("Delivery times count from {delivery_times_count_from}, so weekends aren't included.")
    d.close()


def delivery_delay(d: Dialogue) -> None:
    d.u(d.hi() + d.pick((
        "My order should have arrived {when} but it's still not here.",
        "It's been over a week and my parcel hasn't arrived.", "my delivery is late, what's going on?",
        "The tracking on my order hasn't moved in days.", "Still waiting for my {s}. It's late.",
    )), when=d.pick(RECENT))
    d.a(d.ahi() + d.pick(("Sorry for the wait! ", "Sorry about the delay. ")) + d.pick(ASK_ORDER))
    d.give_order(d.pick(("", "", " I paid for express.")))
    d.a("Thanks. Standard delivery takes {standard_shipping} after dispatch (express {express_shipping}), "
        "and the latest courier update for {o} is in the tracking link under My orders. What does the "
        "tracking show?")
    branch = d.rng.randrange(3)
    if branch == 0:
        d.u(d.pick(("It hasn't changed since {day}.", "nothing new since {day}", "Stuck on 'in transit' since {day}.")),
            day=d.pick(WEEKDAYS))
        d.a("Sorry about that. I've passed {o} to our delivery team to check with the courier, and they'll "
            "email you {email_reply_time}. If the parcel is lost, we'll send a replacement or a full refund.")
    elif branch == 1:
        d.u(d.pick(("It says delivered but nothing came!", "Tracking says delivered, but I don't have it.")))
        d.a("Sorry about that! Please check with neighbours and around your entrance first. I've also passed "
            "{o} to our delivery team, who'll investigate with the courier and email you {email_reply_time}.")
    else:
        d.u(d.pick(("It says out for delivery.", "Oh, it now says out for delivery.")))
        d.a("Good news, it should reach you today. If it doesn't turn up, let us know and we'll chase the "
            "courier.")
    if branch != 2 and d.chance(0.35):
        d.u(d.pick(("Will I get my money back if it's lost?", "And if it never turns up?")))
        d.a("If the courier confirms it's lost, we'll send a replacement or refund you in full, whichever "
            "you prefer.")
    d.close()


def change_address(d: Dialogue) -> None:
    d.u(d.hi() + d.pick((
        "I need to change the delivery address on my order.", "I put the wrong address on my order, can you fix it?",
        "Can I change where my parcel is delivered? I'm moving.", "oops, I entered my old address on my order",
    )))
    d.a(d.ahi() + "I can help if it hasn't been dispatched yet: address changes are only possible while the "
        "order status is 'Processing'. " + d.pick(ASK_ORDER))
    processing = d.chance(0.7)
    status = d.pick((" It still says Processing.", " Status is Processing.")) if processing else d.pick(
        (" It says Dispatched.", " It already says dispatched."))
    told = d.chance(0.6)
    d.give_order(status if told else "")
    if not told:
        d.a("Thanks. Could you check the status of {o} under My orders: is it still 'Processing'?")
        d.u(d.pick(("Yes, Processing.", "yes it is")) if processing else d.pick(("No, it says Dispatched.",
                                                                                   "It says dispatched.")))
    if processing:
        d.a("Great, then it can still be changed. What's the new address?")
        d.u(d.pick(("{addr}", "It's {addr}.", "Please send it to {addr}.")), addr=d.pick(d.company.addresses))
        d.a("Thanks{n}! I've passed the new address for {o} to our orders team. You'll get a confirmation "
            "email {email_reply_time}.")
    else:
        d.a("I'm sorry, once an order has been dispatched the address can no longer be changed. If the "
            "courier can't deliver it, the parcel comes back to us and we refund you in full.")
        if d.chance(0.4):
            d.u(d.pick(("Can I cancel it instead?", "Could I cancel it then?")))
            d.a("Dispatched orders can't be cancelled either, but you can return it {return_window} for a "
                "refund, using the free label in My orders.")
    d.close()


def cancel_order(d: Dialogue) -> None:
    d.u(d.hi() + d.pick((
        "I'd like to cancel my order.", "Can I cancel an order I placed {when}?",
        "please cancel my order, I ordered the wrong {s}", "I changed my mind about the {s}. How do I cancel?",
    )), when=d.pick(RECENT))
    d.a(d.ahi() + "Orders can be cancelled while their status is still 'Processing', before dispatch. "
        + d.pick(ASK_ORDER))
    processing = d.chance(0.7)
    status = d.pick((" It says Processing.", " The status is Processing.", " Still processing.")) if processing \
        else d.pick((" It says Dispatched.", " I think it was dispatched yesterday."))
    if d.chance(0.75):
        d.give_order(status)
    else:
        d.give_order()
        d.a("Thanks. What's the status of {o} under My orders: is it still 'Processing'?")
        d.u(d.pick(("Yes.", "Yes, Processing.")) if processing else d.pick(("It says Dispatched.", "dispatched")))
    if processing:
        d.a("Thanks{n}. As {o} is still Processing, I've passed your cancellation to our orders team. "
            "You'll get a confirmation email, and the refund goes to your original payment method within "
            "{refund_time}.")
        if d.chance(0.4):
            if d.chance(0.5):
                d.u(d.pick(("Will I be charged anything?", "Is there a cancellation fee?")))
                d.a("No, a cancelled order is refunded in full to your original payment method.")
            else:
                d.u(d.pick(("Could you just swap the {s} for a different one instead?", "Can I change the item instead?")))
                d.a("Items on an order can't be swapped, but you can place a new order for the one you want.")
    else:
        d.a("Sorry, {o} has already been dispatched, so it can't be cancelled. Once it arrives, you can "
            "return it {return_window} for a full refund, using the free label in My orders.")
    d.close()


def billing_double_charge(d: Dialogue) -> None:
    amount = d.item.price
    d.u(d.hi() + d.pick((
        "I've been charged twice for the same order!", "Why are there two payments of {amt} on my card?",
        "hi i think you double charged me", "My bank shows two charges for one order.",
    )), amt=amount)
    d.a(d.ahi() + "Sorry about that, let's sort it out. " + d.pick(ASK_ORDER))
    d.give_order(d.pick(("", " Both are {amt}.", " It's {amt} twice.")).replace("{amt}", amount))
    d.a("Thanks. Often the second charge is a pending authorisation that your bank releases automatically "
        "within a few days. Does it show as pending, or have both payments gone through?")
    if d.chance(0.5):
        d.u(d.pick(("One is still pending.", "The second one says pending.", "one of them is pending")))
        d.a("Then it's the authorisation hold: it will disappear on its own and you won't be charged twice. "
            "If it's still there after a week, message us with {o}.")
    else:
        d.u(d.pick(("Both are completed.", "Both have gone through.", "no, both are final")))
        d.a("Thanks for checking. I've passed {o} to our payments team to refund the duplicate payment; they'll "
            "confirm by email {email_reply_time}. The refund reaches your original payment method within "
            "{refund_time}.")
    d.close()


def invoice_request(d: Dialogue) -> None:
    d.u(d.hi() + d.pick((
        "How can I get an invoice for my order?", "I need an invoice for my order.",
        "where do i download my invoice", "Can you send me a receipt for my order?",
        "I need an invoice for my company.",
    )))
    d.a(d.ahi() + "You can download the invoice for any order yourself: open My orders, select the order and "
        "click 'Download invoice'.")
    follow = d.rng.randrange(4)
    if follow in (0, 1):
        d.u(d.pick(("I need my company name and VAT number on it.", "Can you add my company details to it?")))
        d.a("No problem. Send me the order number and your company details, and our billing team will "
            "email you an updated invoice {email_reply_time}.")
        vat = f"{d.pick(('GB', 'DE', 'NL'))}{d.rng.randint(100000000, 999999999)}"
        company = d.pick(d.company.businesses)
        d.give_order(d.pick((" Company: {c}, VAT {v}.", " It's for {c}, VAT number {v}.")).replace(
            "{c}", company).replace("{v}", vat))
        d.a("Thanks! I've passed {o} and your company details to our billing team; the updated invoice will "
            "arrive by email {email_reply_time}.")
    elif follow == 2:
        d.u(d.pick(("I can't find My orders.", "where is My orders?")))
        d.a("Log in, then click your name at the top right and choose 'My orders'. Select the order and "
            "you'll see the 'Download invoice' button.")
    else:
        d.u(d.pick(("Is it a PDF?", "What format is the invoice?")))
        d.a("Yes, it downloads as a PDF that you can print or forward.")
    d.close()


def payment_methods(d: Dialogue) -> None:
    accepted = "We accept {payment_methods}."
    q = d.rng.randrange(4)
    if q == 0:
        d.u(d.hi() + d.pick(("What payment methods do you accept?", "how can i pay?", "Which cards do you take?")))
        d.a(d.ahi() + accepted)
    elif q == 1:
        method = d.pick(("PayPal", "Apple Pay", "American Express", "Google Pay", "a gift card"))
        d.u(d.hi() + d.pick(("Can I pay with {m}?", "Do you take {m}?")), m=method)
        d.a(d.ahi() + "Yes, you can. " + accepted)
    elif q == 2:
        d.u(d.hi() + d.pick(("Is cash on delivery possible?", "Can I pay cash when it arrives?")))
        d.a(d.ahi() + "Sorry, we don't offer cash on delivery. " + accepted)
    else:
        d.u(d.hi() + d.pick(("Can I pay in instalments?", "Do you have a buy now, pay later option?")))
        d.a(d.ahi() + "Sorry, we don't offer payment in instalments. " + accepted)
    follow = d.rng.randrange(3)
    if follow == 0:
        d.u(d.pick(("When is my card charged?", "Do you take the money straight away?")))
        d.a("Payment is taken when you place the order.")
    elif follow == 1:
        d.u(d.pick(("Can I pay by bank transfer?", "What about a bank transfer?")))
        d.a("Sorry, bank transfer isn't available. You can pay by card, PayPal, Apple Pay, Google Pay or with "
            "a {company} gift card.")
    d.close()


def password_reset(d: Dialogue) -> None:
    d.u(d.hi() + d.pick(("I forgot my password.", "I can't log into my account.", "how do i reset my password",
                         "My password isn't working anymore.")))
    d.a(d.ahi() + "No problem! Click 'Forgot password' on the login page and enter the email address on your "
        "account. We'll email you a reset link, which is valid for 1 hour.")
    follow = d.rng.randrange(4)
    if follow == 0:
        d.u(d.pick(("I didn't get the email.", "The reset email never arrived.")))
        d.a("Please check your spam folder and make sure you used the email address on your account. If it "
            "still doesn't arrive, I can pass you to a colleague; our team is available {support_hours}.")
    elif follow == 1:
        d.u(d.pick(("The link says it has expired.", "The reset link doesn't work anymore.")))
        d.a("Reset links are valid for 1 hour, so just click 'Forgot password' again to get a fresh one.")
    elif follow == 2:
        d.u(d.pick(("Can you just reset it for me here?", "Can you tell me my password?")))
        d.a("For security, I can't see or change passwords in this chat. The 'Forgot password' link is the "
            "safe way to do it.")
    d.close()


def delete_account(d: Dialogue) -> None:
    d.u(d.hi() + d.pick(("Please delete my account.", "How do I close my Kestrel account?",
                         "I want all my data removed.", "delete my account pls")))
    d.a(d.ahi() + "Sorry to see you go! You can delete your account under My account > Privacy > Delete "
        "account. We'll send a confirmation email and complete the deletion within 7 days.")
    follow = d.rng.randrange(5)
    if follow == 0:
        d.u(d.pick(("What happens to my order history?", "Do you keep any of my data?")))
        d.a("Your account and personal details are deleted, but we keep invoices for past orders because "
            "the law requires it.")
    elif follow == 1:
        d.u(d.pick(("I still have an order on the way.", "One order hasn't arrived yet, is that a problem?")))
        d.a("Deletion is only possible once open orders are delivered or cancelled, so please wait until "
            "your parcel arrives.")
    elif follow == 2:
        d.u(d.pick(("Will you stop emailing me?", "I mostly just want the emails to stop.")))
        d.a("Deleting the account stops all emails. If you only want to stop the newsletter, use the "
            "unsubscribe link at the bottom of any newsletter.")
    elif follow == 3:
        d.u(d.pick(("Can't you just do it for me?", "Can you delete it from your side?")))
        d.a("For security, deletion has to be requested from your logged-in account, but it only takes a "
            "minute under My account > Privacy > Delete account.")
    d.close()


def warranty_claim(d: Dialogue) -> None:
    d.item = d.rng.choice(d.company.appliances)  # the warranty covers appliances only
    expired = d.chance(0.15)
    age = d.pick(("about two and a half years ago", "almost three years ago")) if expired else d.pick((
        "three months ago", "last summer", "about a year ago", "six weeks ago", "in the spring", "18 months ago"))
    fault = d.pick(("stopped working", "won't turn on anymore", "makes a strange noise", "keeps tripping the fuse",
                    "leaks water", "gets far too hot"))
    d.u(d.hi() + d.pick(("My {s} {f}.", "The {p} I bought {age} {f}.", "Is my {s} still under warranty? It {f}.",
                         "my {s} {f}, what can i do?")), f=fault, age=age)
    d.a(d.ahi() + "Sorry to hear that! All our appliances come with a 2-year warranty from delivery. "
        + d.pick(ASK_ORDER))
    d.give_order(d.pick((" I bought it {age}.", " Delivered {age}.")).replace("{age}", age))
    if expired:
        d.a("Thanks. I'm sorry, the 2-year warranty on the {s} has ended, so we can't offer a free repair or "
            "replacement. If you'd like, I can pass you to a colleague to talk through your options.")
        d.close(force=True)
        return
    d.a("Thanks. The {s} is within the 2-year warranty, so we'll repair or replace it free of charge. Please "
        "email a short description of the fault, plus a photo or video if you can, to {email} with {o} in "
        "the subject.")
    follow = d.rng.randrange(4)
    if follow == 0:
        d.u(d.pick(("Do I need to send it back?", "Should I post it to you?")))
        d.a("Our team will let you know by email. If they need it, they'll send you a free return label.")
    elif follow == 1:
        d.u(d.pick(("Is it covered if I dropped it?", "What if it's my fault? I knocked it off the counter.")))
        d.a("The warranty covers faults, not accidental damage such as drops.")
    elif follow == 2:
        d.u(d.pick(("How long will that take?", "When will I hear back?")))
        d.a("Our team replies {email_reply_time} with the next steps.")
    d.close()


def human_handoff(d: Dialogue) -> None:
    q = d.rng.randrange(3)
    if q == 0:
        d.u(d.hi() + d.pick(("Can I talk to a real person?", "I'd like to speak to a human agent, please.", "agent",
                             "Are you a bot? I want a human.", "human please")))
        d.a(d.ahi() + "Of course! Our support team is available {support_hours}. I can transfer you to a "
            "colleague now: could you tell me briefly what it's about, so they're up to speed?")
        topic = d.rng.randrange(3)
        if topic == 0:
            d.u(d.pick(("It's about order {o}, {t}.", "Order {o}. {t}.")),
                t=d.pick(("the wrong item arrived", "I have a question about the bill", "it's complicated")))
        elif topic == 1:
            d.u(d.pick(("It's about my account.", "A problem with my payment.")))
        else:
            d.u(d.pick(("I'd rather explain it to them.", "just put me through")))
        d.a(d.pick(("Thanks{n}, I've added that note. I'm transferring you now; a colleague will join this chat "
                    "shortly.", "No problem{n}. Transferring you now: a colleague will be with you shortly.")))
    elif q == 1:
        d.u(d.hi() + d.pick(("Is there someone I can call?", "Can I phone you instead?", "What's your phone number?")))
        d.a(d.ahi() + "Yes, you can call our team on {phone}, {support_hours}. You can also email {email} at any "
            "time.")
        if d.chance(0.5):
            d.u(d.pick(("Is anyone there on Sundays?", "And on Sundays?")))
            d.a("We're closed on Sundays. Outside our hours, email {email} and we'll reply "
                "{email_reply_time}.")
    else:
        d.u(d.hi() + d.pick(("I want to talk to a person. It's Sunday, is anyone there?",
                             "Can a human help me? It's late in the evening here.")))
        d.a(d.ahi() + "Our team is available {support_hours}, so nobody is online right now if you're "
            "outside those hours. You can email {email} and we'll reply {email_reply_time}, or I can help "
            "in the meantime.")
    d.close()


def product_availability(d: Dialogue) -> None:
    d.u(d.hi() + d.pick(("Is the {p} in stock?", "When will the {s} be back in stock?", "do you have the {s} available?",
                         "I want to buy the {p} but it says out of stock.")))
    d.a(d.ahi() + "I can't see live stock levels from this chat, but the product page always shows current "
        "availability. If the {s} is out of stock, click 'Notify me' on that page and we'll email you as soon "
        "as it's back.")
    follow = d.rng.randrange(4)
    if follow == 0:
        d.u(d.pick(("Can I pre-order it?", "Could you reserve one for me?")))
        d.a("We don't take pre-orders or reservations, I'm afraid. 'Notify me' is the quickest way to hear when "
            "it's available.")
    elif follow == 1:
        d.u(d.pick(("Do you know when it'll be restocked?", "Any idea when?")))
        d.a("I don't have restock dates, sorry. 'Notify me' will email you as soon as it's back.")
    elif follow == 2:
        d.u(d.pick(("Does it come in other colours?", "Are there other sizes?")))
        d.a("All available colours and versions are listed on the product page.")
    d.close()


def discount_code_problem(d: Dialogue) -> None:
    code = d.pick(d.company.discount_codes)
    if d.chance(0.7):
        d.u(d.hi() + d.pick(("My discount code {c} isn't working.", "The code {c} says invalid at checkout.",
                             "Why won't my promo code work?", "discount code not working??")), c=code)
        d.a(d.ahi() + "Sorry about that! A few things to check: codes are entered at checkout before payment, "
            "only one code can be used per order, codes don't apply to items already on sale, and each code "
            "has an expiry date shown in the email it came in.")
        follow = d.rng.randrange(4)
        if follow == 0:
            d.u(d.pick(("Ah, one of the items is on sale.", "Oh, my basket has a sale item in it.")))
            d.a("That explains it: codes only apply to full-price items, so the discount is calculated on the "
                "rest of your basket.")
        elif follow == 1:
            d.u(d.pick(("It expired yesterday, can you extend it?", "Can you reactivate an expired code?")))
            d.a("I'm sorry, I can't extend expired codes.")
        elif follow == 2:
            d.u(d.pick(("Can I use two codes?", "Can I combine it with another code?")))
            d.a("Only one discount code can be used per order.")
    else:
        d.u(d.hi() + d.pick(("I forgot to use my discount code on my order!", "I placed an order but forgot to add "
                             "the code {c}. Can you apply it?")), c=code)
        d.a(d.ahi() + "I'm sorry, codes can't be added once an order has been placed. If the order is still "
            "'Processing', you could cancel it and order again with the code.")
        if d.chance(0.6):
            d.u(d.pick(("How do I cancel?", "OK, can you cancel it then?")))
            d.a("Send me the order number and I'll pass the cancellation to our orders team, as long as the "
                "status is still 'Processing'.")
            d.give_order(d.pick((" It's still Processing.", " Status says Processing.")))
            d.a("Done{n}: I've passed the cancellation of {o} to our orders team. You'll get a confirmation "
                "email, and the refund goes to your original payment method within {refund_time}.")
    d.close()


def complaint(d: Dialogue) -> None:
    topics = (
        ("This is the second time my delivery has been late. Really not happy.", "the late deliveries"),
        ("The courier left my parcel in the rain and everything got soaked.", "how your parcel was left"),
        ("I emailed your support three days ago and nobody replied.", "the unanswered email"),
        ("The courier was really rude to me.", "the courier's behaviour"),
        ("Your website charged me the wrong price for the {s}.", "the price you were charged"),
    )
    text, short = d.rng.choice(topics)
    if d.chance(0.15):
        d.u(d.hi() + d.pick(("The packaging was ridiculous: a huge box for one {s}.",
                             "So much plastic in your packaging, please do better.")))
        d.a(d.ahi() + "Thanks, that's fair feedback, and I'm sorry. I've passed it on to our warehouse team.")
        d.close(force=True)
        return
    d.u(d.hi() + text)
    d.a(d.ahi() + "I'm really sorry about that; it's not the experience we want you to have. Could you give "
        "me the order number so I can log your complaint?")
    d.give_order()
    d.a("Thank you. I've logged your complaint about {t} for {o}. Our customer care team reviews every "
        "complaint and will reply by email {email_reply_time}.", t=short)
    follow = d.rng.randrange(3)
    if follow == 0:
        d.u(d.pick(("Will I get any compensation?", "I expect some kind of refund for this.")))
        d.a("I can't promise anything here, but the team will review your case and let you know by email.")
    elif follow == 1:
        d.u(d.pick(("I want to speak to a manager.", "Can I talk to someone about this?")))
        d.a("I understand. I've noted that in your complaint, and you can also call the team on {phone}, "
            "{support_hours}.")
    d.close(p=0.5)


def contact_info(d: Dialogue) -> None:
    q = d.rng.randrange(4)
    if q == 0:
        d.u(d.hi() + d.pick(("What are your opening hours?", "When is customer service open?", "what time are you open")))
        d.a(d.ahi() + "Our support team is available {support_hours}. You can reach us in this chat, by email at "
            "{email} or by phone on {phone}.")
    elif q == 1:
        d.u(d.hi() + d.pick(("How can I contact you?", "What's the best way to reach you?")))
        d.a(d.ahi() + "You can use this chat, email {email} or call {phone}. Our team is available "
            "{support_hours}.")
    elif q == 2:
        d.u(d.hi() + d.pick(("Do you have an email address for support?", "what's your email")))
        d.a(d.ahi() + "Yes, it's {email}. We reply {email_reply_time}.")
    else:
        d.u(d.hi() + d.pick(("Are you open on Sundays?", "Can I call on a Sunday?")))
        d.a(d.ahi() + "Our team is closed on Sundays; we're available {support_hours}. You can still email "
            "{email} and we'll reply {email_reply_time}.")
    follow = d.rng.randrange(3)
    if follow == 0:
        d.u(d.pick(("What time zone is that?", "Is that UK time?")))
        d.a("Those hours are in CET (Central European Time).")
    elif follow == 1:
        d.u(d.pick(("Can I reach you on WhatsApp?", "Do you have a chat on social media?")))
        d.a("Not at the moment: you can reach us here in chat, by email at {email} or by phone on {phone}.")
    d.close()


def out_of_scope(d: Dialogue) -> None:
    d.u(d.hi() + d.pick((
        "Can you help me with my maths homework?", "What's the weather like in Paris tomorrow?", "tell me a joke",
        "Can you recommend a good film?", "Who won the football last night?",
        "What's the best recipe for banana bread?", "Can you write a poem about cats?",
    )))
    d.a(d.ahi() + d.pick((
        "I'm the {company} support assistant, so I can only help with things like orders, deliveries, "
        "returns, payments and your account. Is there anything like that I can help with?",
        "Sorry, that's outside what I can help with: I'm here for {company} orders, deliveries, returns, "
        "payments and account questions. Anything I can do for you there?",
    )))
    follow = d.rng.randrange(4)
    if follow == 0:
        d.u(d.pick(("Fair enough. How long do I have to return something?", "ok then, what's your return window?")))
        d.a("You can return items {return_window}, using the free prepaid label in My orders.")
    elif follow == 1:
        d.u(d.pick(("Ok, how long does delivery take?", "Fine. How fast is shipping?")))
        d.a("Standard shipping takes {standard_shipping} and express {express_shipping}; standard shipping is "
            "free on orders over {free_shipping_threshold}.")
    elif follow == 2:
        d.item = d.rng.choice(d.company.appliances)
        d.u(d.pick(("Is my {s} covered by a warranty?", "Ok. Do appliances have a warranty?")))
        d.a("Yes, all our appliances come with a 2-year warranty from delivery.")
    else:
        d.u(d.pick(("No, that's all.", "no thanks", "Nope, bye.")))
        d.a(d.pick(("No problem{n}. Have a lovely day!", "Alright{n}, take care!")))
        return
    d.close()


BUILDERS: dict[str, Callable[[Dialogue], None]] = {
    "order_status": order_status,
    "return_item": return_item,
    "refund_status": refund_status,
    "damaged_item": damaged_item,
    "shipping_options": shipping_options,
    "delivery_delay": delivery_delay,
    "change_address": change_address,
    "cancel_order": cancel_order,
    "billing_double_charge": billing_double_charge,
    "invoice_request": invoice_request,
    "payment_methods": payment_methods,
    "password_reset": password_reset,
    "delete_account": delete_account,
    "warranty_claim": warranty_claim,
    "human_handoff": human_handoff,
    "product_availability": product_availability,
    "discount_code_problem": discount_code_problem,
    "complaint": complaint,
    "contact_info": contact_info,
    "out_of_scope": out_of_scope,
}
assert tuple(BUILDERS) == INTENTS
